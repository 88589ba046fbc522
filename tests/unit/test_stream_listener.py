"""StreamListener (backend/assistant/relay.py): what a delivered message does to one stream, in
process. A recording transport stands in for the client's socket; nothing else is replaced."""

from __future__ import annotations

import asyncio

from backend.assistant.relay import HIGH_WATER, ChunkedSocket, Phase, StreamListener, message_span


def frame(seq: int, final: bool = False, gen: int = 1) -> bytes:
    if final:
        return b'id: %d-%d\nevent: done\ndata: {"finishReason":"stop"}\n\n' % (gen, seq)
    return b'id: %d-%d\ndata: {"content":"w%d "}\n\n' % (gen, seq, seq)


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.backlog = 0
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.backlog


def listener(last: int, *, live: bool = True) -> tuple[StreamListener, RecordingTransport]:
    transport = RecordingTransport()
    socket = ChunkedSocket(None, transport)  # type: ignore[arg-type]  # the response is only used by send_head
    socket.direct = True
    stream = StreamListener(socket, (1, 1, 1), last)
    stream.direct = True
    if live:
        stream.phase = Phase.LIVE
    return stream, transport


async def test_the_next_frame_goes_straight_to_the_socket_as_one_chunk() -> None:
    stream, transport = listener(2)
    message = frame(3) + frame(4)  # a writer publishes the chunks that were ready together
    stream.deliver(message)
    assert transport.written == [b"%x\r\n%b\r\n" % (len(message), message)]
    assert stream.last == 4 and not stream.queued and not stream.wake.is_set() and stream.active


async def test_duplicates_are_dropped() -> None:
    stream, transport = listener(4)
    stream.deliver(frame(3) + frame(4))
    assert transport.written == [] and stream.queued == [] and stream.last == 4


async def test_a_hole_goes_to_the_streams_task_which_finds_it() -> None:
    stream, transport = listener(2)
    stream.deliver(frame(5))  # 3 and 4 were missed
    assert transport.written == [] and stream.queued == [frame(5)] and stream.wake.is_set()
    assert stream.accept(stream.queued) == ([], False, True)  # a hole: read the log
    assert stream.last == 2


async def test_the_final_frame_is_written_by_the_streams_task() -> None:
    stream, transport = listener(2)
    stream.deliver(frame(3) + frame(4, final=True))
    assert transport.written == [] and stream.wake.is_set()  # the task ends the response after it
    out, ended, hole = stream.accept(stream.queued)
    assert out == [frame(3), frame(4, final=True)] and ended and not hole and stream.last == 4


async def test_a_slow_client_is_served_from_the_log() -> None:
    stream, transport = listener(2)
    transport.backlog = HIGH_WATER
    stream.deliver(frame(3))
    assert transport.written == [] and stream.phase is Phase.CATCHING_UP and stream.wake.is_set()
    assert stream.last == 2  # nothing counted as sent


async def test_while_catching_up_frames_wait_for_the_task() -> None:
    stream, transport = listener(0, live=False)
    stream.deliver(frame(1))
    stream.deliver(frame(2) + frame(3))
    assert transport.written == [] and stream.queued == [frame(1), frame(2), frame(3)]
    out, ended, hole = stream.accept([frame(1), frame(1), frame(2), frame(3)])
    assert out == [frame(1), frame(2), frame(3)] and not ended and not hole and stream.last == 3


async def test_accept_stops_at_the_final_frame() -> None:
    stream, _ = listener(0, live=False)
    out, ended, hole = stream.accept([frame(1), frame(2, final=True), frame(3)])
    assert out == [frame(1), frame(2, final=True)] and ended and not hole


async def test_phase_changes_do_not_undo_a_closing_stream() -> None:
    stream, _ = listener(0)
    stream.refill()
    assert stream.phase is Phase.CATCHING_UP
    stream.reply_over()
    assert stream.phase is Phase.REPLY_OVER
    stream.refill()  # only a live stream goes back to catching up
    assert stream.phase is Phase.REPLY_OVER
    stream.close()
    stream.reply_over()
    assert stream.phase is Phase.CLOSING


def test_message_span() -> None:
    assert message_span(frame(7)) == (7, 7, False)
    assert message_span(frame(7) + frame(8) + frame(9, final=True)) == (7, 9, True)
    assert message_span(frame(12, gen=34)) == (12, 12, False)
