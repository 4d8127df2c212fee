"""One base class for problems with the user's input (files, configs, checkpoints).

Entry points catch `InputError` and print its one-line message; anything else is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input the user can fix: the message names the file or key and what is wrong."""


class MissingFilesError(FileNotFoundError, InputError):
    """Files that a run needs but that are not on disk (raised before any compute starts); also a
    FileNotFoundError for callers that test for that."""


class DamagedFileError(InputError):
    """A file that should hold the toolkit's own data (a cached .npz, a checkpoint) but cannot be read as such:
    cut short, a flipped bit caught by the archive's checksums, or another kind of file. Caches are recomputed
    when they are damaged; readers say which file it is and what makes it again."""
