"""A fake accelerate for the fake trainer environment (tests/fake_trainer_env on PYTHONPATH): see commands/launch.py."""

__version__ = "0.0.0+fake"
