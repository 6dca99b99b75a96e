"""The replica's batcher (no Ray): batches form when the model is free, from everything that queued meanwhile."""
import asyncio
import time

import pytest

from raylessons.serving.batching import Batcher


class FakeModel:
    """An async forward that takes `seconds` per batch and records every batch it was given."""

    def __init__(self, seconds: float = 0.05, fail_on: object = None):
        self.seconds, self.fail_on, self.batches, self.alone = seconds, fail_on, [], []
        self.active = self.most_at_once = 0

    async def __call__(self, items: list, alone: bool = True) -> list:
        self.batches.append(list(items))
        self.alone.append(alone)
        self.active += 1
        self.most_at_once = max(self.most_at_once, self.active)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.active -= 1
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [item * 10 for item in items]


def run(coro):
    return asyncio.run(coro)


def test_requests_arriving_during_a_forward_go_into_the_next_batch_together():
    model = FakeModel(seconds=0.1)
    batcher = Batcher(model, max_batch_size=16, batch_wait_timeout_s=0.0)

    async def scenario():
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.02)  # the forward of [0] is running now
        later = [asyncio.create_task(batcher.submit(i)) for i in range(1, 11)]
        return await asyncio.gather(first, *later)

    assert run(scenario()) == [i * 10 for i in range(11)]
    assert model.batches == [[0], list(range(1, 11))]  # not ten batches of one
    assert (batcher.batches, batcher.items) == (2, 11)
    assert 0.2 <= batcher.forward_s < 0.6  # two forwards of 0.1 s each, timed from the batcher


def test_forward_time_counts_only_the_forwards_that_answered():
    model = FakeModel(seconds=0.05, fail_on=3)
    batcher = Batcher(model, max_batch_size=16, batch_wait_timeout_s=0.3)

    async def scenario():
        await batcher.submit(1)  # waits 0.3 s for company first: not forward time
        with pytest.raises(ValueError):
            await batcher.submit(3)

    run(scenario())
    assert (batcher.batches, batcher.items) == (1, 1)
    assert 0.05 <= batcher.forward_s < 0.25


def test_batches_hold_at_most_max_batch_size_in_arrival_order():
    model = FakeModel(seconds=0.01)
    batcher = Batcher(model, max_batch_size=4, batch_wait_timeout_s=0.5)

    async def scenario():
        return await asyncio.gather(*(batcher.submit(i) for i in range(10)))

    t0 = time.perf_counter()
    assert run(scenario()) == [i * 10 for i in range(10)]
    assert model.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert time.perf_counter() - t0 < 0.4  # a full batch does not wait out batch_wait_timeout_s


def test_a_lone_request_waits_for_company_at_most_the_wait_timeout():
    model = FakeModel(seconds=0.0)
    batcher = Batcher(model, max_batch_size=16, batch_wait_timeout_s=0.2)

    async def scenario():
        t0 = time.perf_counter()
        first = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.submit(2))  # within the wait: same batch
        assert await first == 10 and await second == 20
        waited = time.perf_counter() - t0
        t1 = time.perf_counter()
        assert await batcher.submit(3) == 30
        return waited, time.perf_counter() - t1

    waited, alone = run(scenario())
    assert model.batches == [[1, 2], [3]]
    assert 0.19 <= waited < 0.5 and 0.19 <= alone < 0.5


def test_no_wait_at_all_with_a_zero_timeout():
    model = FakeModel(seconds=0.0)
    batcher = Batcher(model, max_batch_size=16, batch_wait_timeout_s=0.0)
    t0 = time.perf_counter()
    assert run(batcher.submit(5)) == 50
    assert time.perf_counter() - t0 < 0.05


def test_a_failing_forward_fails_its_own_batch_only():
    model = FakeModel(seconds=0.05, fail_on=2)
    batcher = Batcher(model, max_batch_size=2, batch_wait_timeout_s=0.0)

    async def scenario():
        return await asyncio.gather(*(batcher.submit(i) for i in range(5)), return_exceptions=True)

    results = run(scenario())
    assert model.batches == [[0, 1], [2, 3], [4]]
    assert results[:2] == [0, 10] and results[4] == 40
    assert all(isinstance(r, ValueError) and "bad item 2" in str(r) for r in results[2:4])
    assert (batcher.batches, batcher.items) == (2, 3)


def test_a_forward_returning_the_wrong_number_of_rows_is_an_error_not_a_hang():
    async def short(items, alone):
        return items[:-1]

    batcher = Batcher(short, max_batch_size=4, batch_wait_timeout_s=0.0)

    async def scenario():
        return await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)

    results = run(scenario())
    assert all(isinstance(r, RuntimeError) and "1 rows for a batch of 2" in str(r) for r in results)


def test_a_request_cancelled_while_queued_is_left_out_of_its_batch():
    model = FakeModel(seconds=0.1)
    batcher = Batcher(model, max_batch_size=16, batch_wait_timeout_s=0.0)

    async def scenario():
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.02)
        gone = asyncio.create_task(batcher.submit(1))
        kept = asyncio.create_task(batcher.submit(2))
        await asyncio.sleep(0.01)
        gone.cancel()  # e.g. the request timed out in the ingress
        return await first, await kept

    assert run(scenario()) == (0, 20)
    assert model.batches == [[0], [2]]


def test_settings_change_live_and_bad_ones_are_refused():
    model = FakeModel(seconds=0.0)
    batcher = Batcher(model, max_batch_size=16, batch_wait_timeout_s=0.0)
    batcher.max_batch_size = 1  # as a user_config change does

    async def scenario():
        return await asyncio.gather(*(batcher.submit(i) for i in range(3)))

    assert run(scenario()) == [0, 10, 20] and model.batches == [[0], [1], [2]]
    with pytest.raises(ValueError, match="max_batch_size and lanes must be >= 1"):
        Batcher(model, max_batch_size=0)


def test_one_batcher_serves_successive_event_loops():
    model = FakeModel(seconds=0.0)
    batcher = Batcher(model, max_batch_size=4, batch_wait_timeout_s=0.01)
    assert run(batcher.submit(1)) == 10
    assert run(asyncio.wait_for(batcher.submit(2), 5)) == 20  # another asyncio.run: a new loop, followed
    assert model.batches == [[1], [2]]


def test_lanes_run_forwards_side_by_side_under_load_and_a_lone_request_alone():
    model = FakeModel(seconds=0.1)
    batcher = Batcher(model, max_batch_size=16, batch_wait_timeout_s=0.0, lanes=2)

    async def scenario():
        first = asyncio.create_task(batcher.submit(0))  # finds the model idle: runs alone
        await asyncio.sleep(0.03)
        queued = [asyncio.create_task(batcher.submit(i)) for i in range(1, 9)]  # wait for the lone forward to end
        await asyncio.sleep(0.1)  # the two lanes run [1-4] and [5-8] now
        later = asyncio.create_task(batcher.submit(9))  # both lanes busy: waits for the first to free
        return await asyncio.gather(first, *queued, later)

    t0 = time.perf_counter()
    assert run(scenario()) == [i * 10 for i in range(10)]
    elapsed = time.perf_counter() - t0
    assert model.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert model.alone == [True, False, False, True]  # [9] ran once both lanes had ended: alone again
    assert model.most_at_once == 2
    assert 0.3 <= elapsed < 0.39  # 0.1 alone, 0.1 for both lanes side by side, 0.1 for [9]: not 0.4 one by one
    assert (batcher.batches, batcher.items) == (4, 10)
    assert 0.4 <= batcher.forward_s < 0.8  # summed over lanes


def test_a_pair_queued_together_splits_over_the_lanes_and_a_lone_forward_runs_alone():
    model = FakeModel(seconds=0.1)
    batcher = Batcher(model, max_batch_size=16, batch_wait_timeout_s=0.5, lanes=2)

    async def scenario():
        pair = [asyncio.create_task(batcher.submit(i)) for i in (0, 1)]  # queued together: one per lane
        await asyncio.sleep(0.6)  # the wait (0.5 s, the model was idle), then both lanes for 0.1 s
        one = asyncio.create_task(batcher.submit(2))  # model idle again: waits 0.5 s, then alone
        await asyncio.sleep(0.55)
        two = asyncio.create_task(batcher.submit(3))  # [2] runs alone: no other forward starts until it ends
        return await asyncio.gather(*pair, one, two)

    assert run(scenario()) == [0, 10, 20, 30]
    assert model.batches == [[0], [1], [2], [3]]
    assert model.alone == [False, False, True, True]  # [3] waited for the lone [2], then found nothing running
    assert model.most_at_once == 2


def test_one_lane_runs_every_forward_alone_and_lanes_change_live():
    model = FakeModel(seconds=0.05)
    batcher = Batcher(model, max_batch_size=2, batch_wait_timeout_s=0.0, lanes=2)

    async def burst():
        return await asyncio.gather(*(batcher.submit(i) for i in range(6)))

    assert run(burst()) == [i * 10 for i in range(6)]
    assert model.most_at_once == 2 and not any(model.alone)  # 3 pairs: never alone while others wait
    batcher.lanes = 1  # as a user_config change does
    model.batches, model.alone, model.most_at_once = [], [], 0
    assert run(burst()) == [i * 10 for i in range(6)]
    assert model.batches == [[0, 1], [2, 3], [4, 5]] and all(model.alone) and model.most_at_once == 1
    with pytest.raises(ValueError, match="lanes must be >= 1"):
        Batcher(model, lanes=0)
