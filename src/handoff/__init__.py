"""handoff: integration foundation for omnichannel retail customer data."""

__version__ = "0.1.0"
