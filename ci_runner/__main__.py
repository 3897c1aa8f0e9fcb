"""`python -m ci_runner`, as the Docker entrypoint runs it."""

from ci_runner.cli import main

if __name__ == "__main__":
    main()
