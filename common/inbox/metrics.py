from prometheus_client import Counter

HANDLED = Counter("inbox_handled", "Messages handled for the first time", ["type"])
DUPLICATES = Counter(
    "inbox_duplicates", "Duplicate deliveries acknowledged without a second effect", ["type"]
)
DEAD_LETTERS = Counter("inbox_dead_letters", "Messages parked in the dead-letter table", ["reason"])
