import { expect } from "@esm-bundle/chai";
import { CHAT_SCOPE, ChatModel } from "../../component/chat-model.js";
import type { MultiuserChat } from "../../component/multiuser-chat/multiuser-chat.js";
import { Session } from "../../component/session.js";
import { addChat, logTexts, reflectorHost, removeAll, uniqueRoom, waitFor } from "./helpers.js";

describe("rendering under load in Chromium", () => {
  afterEach(removeAll);

  it("a burst of 1,000 posts renders at most once per animation frame", async () => {
    const room = uniqueRoom("burst");
    const element = await addChat({ host: reflectorHost(), room });
    const sender = Session.join({ host: reflectorHost(), room, model: ChatModel });
    await sender.whenReady();
    await waitFor(() => (element.model?.users.length ?? 0) === 2, "the sender in the element's user list");
    await element.updateComplete;

    // Count the element's renders, and the animation frames that pass meanwhile.
    const prototype = customElements.get("multiuser-chat")!.prototype as { render: (this: MultiuserChat) => unknown };
    const render = prototype.render;
    let renders = 0;
    prototype.render = function (this: MultiuserChat) {
      if (this === element) renders++;
      return render.call(this);
    };
    let frames = 0;
    let counting = true;
    const countFrame = () => {
      frames++;
      if (counting) requestAnimationFrame(countFrame);
    };
    requestAnimationFrame(countFrame);
    try {
      const count = 1000;
      for (let i = 0; i < count; i++) sender.publish(CHAT_SCOPE, "post", { text: `burst ${i}` });
      await waitFor(() => element.model?.history.at(-1)?.text === `burst ${count - 1}`, "the whole burst in the element's model", 30_000);
      await element.updateComplete;
      counting = false;
      expect(logTexts(element).at(-1)).to.match(/burst 999$/);
      console.log(`1,000 posts: ${renders} renders in ${frames} animation frames`);
      expect(renders).to.be.at.most(frames + 1, "at most one render per animation frame");
      expect(renders).to.be.below(count / 10, "far fewer renders than events");
    } finally {
      counting = false;
      prototype.render = render;
      sender.leave();
    }
  });
});
