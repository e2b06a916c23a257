"""Table and field mappings: YAML -> typed model."""

from bcdv.mapping.loader import LoadedMapping, load_mapping_file, load_mapping_set, load_mappings
from bcdv.mapping.model import Direction, FieldMapping, Side, TableMapping

__all__ = ["Direction", "FieldMapping", "LoadedMapping", "Side", "TableMapping",
           "load_mapping_file", "load_mapping_set", "load_mappings"]
