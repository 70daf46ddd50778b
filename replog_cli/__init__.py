"""replog's command-line client: `replog append|list|health|nodes|watch|demo` (see main.py)."""
