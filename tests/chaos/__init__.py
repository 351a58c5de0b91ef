"""``make chaos``: the whole system on private PostgreSQL and Redis, driven through the gateway
while processes are killed, paused and the backing servers restarted; then every Outcome of
DESIGN.md §7 is checked through the API. See the README, "Chaos: `make chaos`"."""
