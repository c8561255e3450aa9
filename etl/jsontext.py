"""JSON text as the pipeline writes it, with the encoders built once.

json.dumps() with any keyword argument builds a new JSONEncoder on every call, which is about half of what
a small dict costs it; the writer encodes a dict column for every row, the parse processes a meta per link
and a hash text per list item. The outputs are json.dumps()'s exactly, with the same arguments."""

from __future__ import annotations

import json

# json.dumps(value, ensure_ascii=False)
text = json.JSONEncoder(ensure_ascii=False).encode
# json.dumps(value, ensure_ascii=False, default=str)
text_or_str = json.JSONEncoder(ensure_ascii=False, default=str).encode
# json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
canonical = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode
# json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
sorted_text = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str).encode
