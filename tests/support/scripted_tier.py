"""A tier worker that breaks the tier protocol on purpose, so tests can check that the gateway notices.

It speaks NATS like a real worker (queue group on the tier's subject, a TierAccept reply, TokenChunks
on the request's chunk subject) but follows a script: it never accepts, falls silent after the first
chunk, skips a sequence number, sends chunks out of order, or sends bytes that are no message at all.
"""

from __future__ import annotations

from typing import Literal

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from cascade.v1 import common_pb2, events_pb2
from services.core import subjects

Behaviour = Literal[
    "well_behaved",
    "never_accepts",
    "goes_silent",
    "loses_a_chunk",
    "reorders_chunks",
    "garbles_accept",
    "garbles_chunks",
]
GARBAGE = b"\xff\xff\xff"  # not a protobuf message (field 0 does not exist)

# (seq, text, final) of the chunks each behaviour sends after accepting.
SCRIPTS: dict[str, list[tuple[int, str, bool]]] = {
    "well_behaved": [(0, "one ", False), (1, "two", True)],
    "goes_silent": [(0, "one ", False)],
    "loses_a_chunk": [(0, "one ", False), (2, "three", True)],
    "reorders_chunks": [(1, "two ", False), (0, "one ", False), (2, "three", True)],
}


class ScriptedTier:
    def __init__(self, nc: NatsClient, *, tier: str, behaviour: Behaviour) -> None:
        self._nc, self.tier, self.behaviour = nc, tier, behaviour
        self.requests: list[events_pb2.TierRequest] = []

    async def start(self) -> None:
        queue = subjects.tier_queue(self.tier)
        self._sub = await self._nc.subscribe(subjects.tier_subject(self.tier), queue=queue, cb=self._on_request)
        await self._nc.flush()  # the server has the subscription before anything is sent to it

    async def stop(self) -> None:
        await self._sub.unsubscribe()

    async def _on_request(self, msg: Msg) -> None:
        request = events_pb2.TierRequest.FromString(msg.data)
        self.requests.append(request)
        if self.behaviour == "never_accepts":
            return
        if self.behaviour == "garbles_accept":
            await msg.respond(GARBAGE)
            return
        accept = events_pb2.TierAccept(request_id=request.request_id, tier=self.tier, backend="scripted", model="s")
        await msg.respond(accept.SerializeToString())
        if self.behaviour == "garbles_chunks":
            await self._nc.publish(request.chunk_subject, GARBAGE)
            return
        for seq, text, final in SCRIPTS[self.behaviour]:
            chunk = events_pb2.TokenChunk(request_id=request.request_id, seq=seq, tier=self.tier, text=text)
            if final:
                chunk.final, chunk.finish_reason = True, common_pb2.FINISH_REASON_STOP
                chunk.usage.CopyFrom(common_pb2.Usage(input_tokens=3, output_tokens=3))
            await self._nc.publish(request.chunk_subject, chunk.SerializeToString())
