"""Command-line helpers shared by the harness programs (and the tool, autoclint/)."""
import os


def add_flag(parser, name, **kwargs):
    """Accept `-name value`, `-name=value`, `--name value` and `--name=value`, as the
    AutoDL programs and their users' scripts use both spellings."""
    parser.add_argument(f"-{name}", f"--{name}", dest=name, **kwargs)


def str2bool(text):
    if str(text).lower() in ("1", "true", "yes", "y", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "n", "off"):
        return False
    raise FlagError(f"not a boolean: {text!r}")


# Settings for a submission that reads them from the environment (ours: configs/*.yaml
# overrides and decision logging). The runner and the tool take them as flags too.
CONFIG_ENV = "AUTOCLINT_CONFIG"
VERBOSE_ENV = "AUTOCLINT_VERBOSE"


class FlagError(ValueError):
    """A flag value refused (one line for the user, exit status 2)."""


def config_overrides(value, flag="--config"):
    """`value` is a JSON object or the path of a JSON/YAML file holding one; returns the JSON
    text for CONFIG_ENV. FlagError (one line naming the flag or the file) otherwise."""
    import json
    text = value.strip()
    if text.startswith("{"):
        try:
            overrides = json.loads(text)
        except ValueError as e:
            raise FlagError(f"{flag}: not valid JSON ({e})") from None
        return json.dumps(overrides)
    if not os.path.isfile(value):
        raise FlagError(f"{flag} {value}: no such file (give a file or a JSON object)")
    try:
        with open(value, encoding="utf-8") as f:
            content = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise FlagError(f"{value}: cannot read it ({e})") from None
    try:
        import yaml  # YAML is a superset of JSON: one parser for both file kinds
        overrides = yaml.safe_load(content)
    except yaml.YAMLError as e:
        raise FlagError(f"{value}: neither JSON nor YAML ({' '.join(str(e).split())})") \
            from None
    if not isinstance(overrides, dict):
        raise FlagError(f"{value}: must hold a mapping of settings, not "
                        f"{type(overrides).__name__}")
    return json.dumps(overrides)


def apply_submission_settings(config=None, verbose=False, flag="--config"):
    """Put --config / --verbose into the environment the submission inherits (the
    variables, when already set, keep working; a flag overrides them)."""
    if config is not None:
        os.environ[CONFIG_ENV] = config_overrides(config, flag)
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
