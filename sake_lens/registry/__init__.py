"""Edit registries: many edits served together, saved to and loaded from disk."""

from .book import BookEntry as BookEntry
from .book import EditBook as EditBook
from .book import conflict_key as conflict_key
from .book import load_edit as load_edit
from .book import save_edit as save_edit
from .storage import FORMAT_VERSION as FORMAT_VERSION

__all__ = ["EditBook", "BookEntry", "conflict_key", "save_edit", "load_edit", "FORMAT_VERSION"]
