"""HTTP: the aiohttp app through which shops and back offices feed profiles and events."""
