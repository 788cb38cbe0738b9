"""The single error type raised by the layout package."""


class LayoutError(ValueError):
    """A layout was malformed, or an operation cannot be expressed as a layout."""
