"""The MongoDB engagement store: profiles, the interaction timeline and tickets."""
