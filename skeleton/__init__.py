"""Our AutoCLINT re-implementation, the library behind model.py.

data/ reads and adapts the records, quick.py gives a first prediction before torch is loaded,
nn/ holds the networks behind one factory, trainer.py trains them, learner.py schedules it all
under the time budget. Nothing here imports the harness (autodl/).
"""
