import { expect } from "@esm-bundle/chai";
import { newRoomSecret, RoomKey } from "../../component/room-key.js";
import { helloChallenge, parseServerFrames, PROTOCOL_VERSION } from "../../common/protocol.js";
import { addChat, demo, logTexts, part, reflectorHost, removeAll, uniqueRoom, waitFor } from "./helpers.js";
import { memberUrl } from "../support/ticket.js";

const demoLog = async (id: string) => (await demo({ action: "log", id })) as string[];
const notices = (lines: string[]) => lines.filter((line) => / (joined|left)$/.test(line));

describe("session continuity in Chromium", () => {
  afterEach(removeAll);

  it("a page offline for 3 s shows no leave or join notices and delivers what was typed meanwhile", async () => {
    const room = uniqueRoom("offline-3s");
    const watcher = await addChat({ host: reflectorHost(), room });
    const id = (await demo({ action: "open", room })) as string;
    try {
      await waitFor(async () => (await demo({ action: "status", id })) === "Connected", "the demo page to connect");
      await waitFor(() => notices(logTexts(watcher)).length === 2, "both join notices");
      const noticesBefore = notices(logTexts(watcher));

      await demo({ action: "offline", id, offline: true });
      await waitFor(async () => (await demo({ action: "status", id })) === "Offline", "the offline status");
      await demo({ action: "post", id, text: "typed in the tunnel" });
      // The post waits on the page, marked as not sent yet.
      await waitFor(async () => (await demoLog(id)).some((line) => line.includes("typed in the tunnel") && line.endsWith("(sending…)")), "the pending post");
      await new Promise((resolve) => setTimeout(resolve, 3000));
      expect(logTexts(watcher).some((line) => line.includes("typed in the tunnel"))).to.equal(false);
      await demo({ action: "offline", id, offline: false });

      await waitFor(async () => (await demo({ action: "status", id })) === "Connected", "the connected status");
      const delivered = (lines: string[]) => lines.filter((line) => line.endsWith("typed in the tunnel"));
      await waitFor(() => delivered(logTexts(watcher)).length === 1, "the post at the watcher");
      await waitFor(
        async () => delivered(await demoLog(id)).length === 1 && !(await demoLog(id)).some((line) => line.endsWith("(sending…)")),
        "the post sent at the page",
      );
      // Give a late duplicate or a late leave notice the time to show up, then check there is none.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(delivered(logTexts(watcher))).to.have.length(1);
      expect(delivered(await demoLog(id))).to.have.length(1);
      expect(notices(logTexts(watcher))).to.deep.equal(noticesBefore);
      expect(notices(await demoLog(id))).to.deep.equal(noticesBefore);
    } finally {
      await demo({ action: "close", id });
    }
  });

  it("warns when the replicas' state hashes disagree and logs the details for the developer", async () => {
    const room = uniqueRoom("divergence");
    const errors: unknown[][] = [];
    const originalError = console.error;
    console.error = (...args: unknown[]) => errors.push(args);
    try {
      const secret = newRoomSecret();
      const honest = [await addChat({ host: reflectorHost(), room, key: secret }), await addChat({ host: reflectorHost(), room, key: secret })];
      // A third member that reports a wrong hash at every snapshot point, as a replica with a non-deterministic model would.
      const key = await RoomKey.derive(room, secret);
      const liar = new WebSocket(await memberUrl(reflectorHost(), key));
      const welcomed = new Promise((resolve) =>
        liar.addEventListener("message", async ({ data }) => {
          for (const frame of parseServerFrames(String(data))) {
            if (frame.type === "challenge") {
              const proof = await key.prove(helloChallenge(key.address, frame.nonce));
              liar.send(JSON.stringify({ type: "hello", version: PROTOCOL_VERSION, key: key.publicKey, proof }));
            }
            if (frame.type === "welcome") resolve(undefined);
            if (frame.type === "snapshot-due") liar.send(JSON.stringify({ type: "hash", seq: frame.seq, hash: "0".repeat(64) }));
            if (frame.type === "mark") liar.send(JSON.stringify({ type: "ack", mark: frame.id }));
          }
        }),
      );
      await welcomed;
      // Events that are not model events: enough of them to make a snapshot due (the test server's SNAPSHOT_EVENTS).
      for (let id = 1; id <= 25; id++) liar.send(JSON.stringify({ type: "publish", id, payload: "noise" }));

      for (const element of honest) {
        await waitFor(() => element.shadowRoot!.querySelector('[part="warning"]') !== null, "the warning");
        const warning = part(element, '[part="warning"]');
        expect(warning.getAttribute("role")).to.equal("alert");
        expect(warning.textContent).to.match(/Another copy of this chat stopped matching after event \d+\. Yours matches the majority\./);
      }
      expect(errors.some((args) => String(args[0]).includes("hold different states"))).to.equal(true);
      liar.close();
    } finally {
      console.error = originalError;
    }
  });
});
