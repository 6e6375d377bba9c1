"""Front ends: the click command line and the page, thin layers over the library API."""
