"""python -m nodes.launcher (see nodes/launcher/__init__.py)."""
from .cli import main

if __name__ == "__main__":
    main()
