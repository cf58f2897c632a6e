"""``python -m novacron``: the same as the ``novacron`` console script."""

from .cli import main

main()
