"""A fake torch for the fake trainer environment: what `lorakit doctor` asks of the trainer's torch, instantly.

The fake sd-scripts needs no torch at all; this only answers the doctor's import and CUDA questions
(a CPU build: no CUDA, no devices). One test in test_launch.py uses the real torch and accelerate.
"""

__version__ = "0.0.0+fake"


class version:
    cuda = None


class cuda:
    @staticmethod
    def device_count() -> int:
        return 0
