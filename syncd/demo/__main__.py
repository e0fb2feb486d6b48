"""`python -m syncd.demo`: run the demo."""

from syncd.demo import main

if __name__ == "__main__":
    main()
