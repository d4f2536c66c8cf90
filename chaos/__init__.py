"""The chaos suite: histories of client operations and the checkers that judge them."""
