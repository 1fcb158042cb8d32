"""Edit registries: many edits served together, saved to and loaded from disk."""

from .book import BookEntry as BookEntry
from .book import EditBook as EditBook
from .book import conflict_key as conflict_key
from .book import list_saved as list_saved
from .book import load_edit as load_edit
from .book import remove_saved as remove_saved
from .book import save_edit as save_edit
from .book import set_saved_enabled as set_saved_enabled
from .storage import FORMAT_VERSION as FORMAT_VERSION

__all__ = [
    "EditBook",
    "BookEntry",
    "conflict_key",
    "save_edit",
    "load_edit",
    "list_saved",
    "remove_saved",
    "set_saved_enabled",
    "FORMAT_VERSION",
]
