"""Run by the trainer's Python (not lorakit's): which modules import and which packages are installed.

Standalone on purpose (standard library only), since the trainer's environment may not have
lorakit. Usage: `<python> trainerprobe.py '{"imports": [...], "distributions": [...]}'`; prints
one JSON object on its last line.
"""

import json
import sys
from typing import Any


def main() -> None:
    request = json.loads(sys.argv[1])
    from importlib import metadata

    result: dict[str, Any] = {"python": sys.version.split()[0], "imports": {}, "distributions": {}, "cuda_devices": None,
              "torch_cuda": None}
    for name in request.get("imports", []):
        try:
            module = __import__(name)
            result["imports"][name] = {"ok": True, "version": str(getattr(module, "__version__", ""))}
        except BaseException as exc:  # a broken package may raise anything while importing
            result["imports"][name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
    for name in request.get("distributions", []):
        try:
            result["distributions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            result["distributions"][name] = None
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            result["torch_cuda"] = torch.version.cuda
            result["cuda_devices"] = torch.cuda.device_count()
        except Exception:
            pass
    print(json.dumps(result))


if __name__ == "__main__":
    main()
