"""The password hasher of sign-up and login: Argon2id with OWASP's recommended minimum
(19 MiB, 2 passes, 1 lane).

Django's default, PBKDF2 with 1,000,000 iterations, cost 0.2–0.45 s of CPU per hash here: a
burst of sign-ups or logins took the customer service's web processes for seconds (20 locust
users starting at once made logins wait 5–15 s). Argon2id at these settings costs ~25 ms and is
memory-hard, so it is both cheaper for us and dearer for an attacker with GPUs.
"""

from __future__ import annotations

from django.contrib.auth.hashers import Argon2PasswordHasher


class Argon2idHasher(Argon2PasswordHasher):
    time_cost = 2
    memory_cost = 19 * 1024  # KiB
    parallelism = 1
