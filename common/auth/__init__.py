"""Identity and access: who is calling (a verified access token) and what they may touch.

The customer service is the bundled identity provider (``keys`` signs its tokens); every
service verifies tokens itself (``verify``) and hands use-cases and selectors a ``Principal``.
"""
