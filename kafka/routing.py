"""Choose the Kafka partition of an event from its routing key (Kafka's murmur2)."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


class Router:
    """Maps routing keys to partitions exactly as Kafka's default partitioner does.

    Results are cached; the cache is dropped when the partition count changes or grows large.
    """

    def __init__(self, partitions: int, cache_size: int = 100_000) -> None:
        self.partitions = partitions
        self._cache: dict[str, int] = {}
        self._cache_size = cache_size

    def partition(self, route: str) -> int:
        """Partition for ``route``."""
        found = self._cache.get(route)
        if found is None:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            found = (murmur2(route.encode()) & 0x7FFFFFFF) % self.partitions
            self._cache[route] = found
        return found
