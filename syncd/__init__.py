"""syncd: a calendar-integrated scheduling daemon for 1-on-1 mentoring."""

__version__ = "0.1.0"
