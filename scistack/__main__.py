"""`python -m scistack`: the same command line as the `scistack` script."""

from scistack.cli import main

if __name__ == "__main__":
    main()
