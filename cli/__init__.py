"""The `ocr-deploy` command line: parse options, call one library function, print the outcome."""

from cli.app import app, main
from cli.common import one_line_errors

__all__ = ["app", "main", "one_line_errors"]
