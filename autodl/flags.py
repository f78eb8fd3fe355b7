"""Command-line helpers shared by the harness programs."""


def add_flag(parser, name, **kwargs):
    """Accept `-name value`, `-name=value`, `--name value` and `--name=value`, as the
    AutoDL programs and their users' scripts use both spellings."""
    parser.add_argument(f"-{name}", f"--{name}", dest=name, **kwargs)


def str2bool(text):
    if str(text).lower() in ("1", "true", "yes", "y", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")
