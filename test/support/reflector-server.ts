/**
 * Starts the project's reflector under a real local server on a free loopback port with its own state folder, and
 * stops it by the process group it started: `wrangler dev` running the PartyServer Worker (what deploys), or
 * `partykit dev` running the PartyKit adapter.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

export type Platform = "wrangler" | "partykit";
export const PLATFORMS: readonly Platform[] = ["wrangler", "partykit"];

export interface ReflectorServerOptions {
  /** `wrangler` (the default) or `partykit`. */
  platform?: Platform;
  /** Reuse a state folder (to restart on the same storage); by default a new temporary one, removed by `stop`. */
  persistDir?: string;
  /** The reflector's settings, by variable name, such as `GRACE_MS`. */
  vars?: Record<string, string>;
  /** Another config than the project's (the bench's baseline room): a wrangler.jsonc or partykit.json. */
  config?: string;
  /** Listen on this port (to restart a server where its clients expect it); by default a free one. */
  port?: number;
}

export interface ReflectorServer {
  platform: Platform;
  /** `127.0.0.1:port`, for partysocket's `host`. */
  host: string;
  port: number;
  /**
   * `wrangler dev`'s DevTools inspector, on loopback, which reaches the Worker's isolate (the bench reads its heap
   * there); none under partykit.
   */
  inspectorPort: number | undefined;
  /** The process group it runs in (the CLI's node process and its workerd), for the bench's CPU readings. */
  processGroup: number;
  persistDir: string;
  /** Output of the server so far, for failure messages and for counting what the room logged. */
  output(): string;
  /** Stops the server; its state folder stays when `keep` is set (to start another server on it). */
  stop(options?: { keep?: boolean }): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

function commandLine(platform: Platform, port: number, inspectorPort: number, persistDir: string, options: ReflectorServerOptions): string[] {
  const vars = Object.entries(options.vars ?? {});
  if (platform === "partykit") {
    const args = [
      join(root, "node_modules/partykit/dist/bin.mjs"),
      "dev",
      "--port",
      String(port),
      "--persist",
      persistDir,
      "--disable-request-cf-fetch",
      "--no-hotkeys",
    ];
    for (const [name, value] of vars) args.push("--var", `${name}=${value}`);
    if (options.config !== undefined) args.push("--config", options.config);
    return args;
  }
  const args = [join(root, "node_modules/wrangler/bin/wrangler.js"), "dev", "--ip", "127.0.0.1", "--port", String(port), "--persist-to", persistDir];
  // A port of our choosing: wrangler does not print the one it would pick.
  args.push("--inspector-port", String(inspectorPort), "--show-interactive-dev-session=false", "--log-level", "log");
  for (const [name, value] of vars) args.push("--var", `${name}:${value}`);
  if (options.config !== undefined) args.push("--config", options.config);
  return args;
}

/** The environment of a server process: wrangler's fetch of `Request.cf`, which fails offline, and its metrics off. */
export function serverEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: "test", WRANGLER_SEND_METRICS: "false", CI: "1" };
  delete env.NODE_OPTIONS; // the test runner's loader is not the server's business
  return env;
}

export async function startReflector(options: ReflectorServerOptions = {}): Promise<ReflectorServer> {
  const platform = options.platform ?? "wrangler";
  const ownDir = options.persistDir === undefined;
  const persistDir = options.persistDir ?? (await mkdtemp(join(tmpdir(), `multiuser-chat-${platform}-`)));
  const port = options.port ?? (await freePort());
  let inspectorPort = await freePort();
  while (inspectorPort === port) inspectorPort = await freePort(); // the server's port was free a moment ago too
  const child = spawn(process.execPath, commandLine(platform, port, inspectorPort, persistDir, options), {
    cwd: root,
    env: serverEnvironment(),
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child.pid!);
  child.once("exit", () => running.delete(child.pid!));
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const server: ReflectorServer = {
    platform,
    host: `127.0.0.1:${port}`,
    port,
    inspectorPort: platform === "wrangler" ? inspectorPort : undefined,
    processGroup: child.pid!,
    persistDir,
    output: () => output,
    stop: async ({ keep = !ownDir } = {}) => {
      await stopGroup(child, exited);
      if (!keep) await rm(persistDir, { recursive: true, force: true });
    },
  };
  try {
    await waitUntilServing(server, exited);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

/** Removes a state folder once no server uses it. */
export async function removePersistDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

async function waitUntilServing(server: ReflectorServer, exited: Promise<void>): Promise<void> {
  let done = false;
  void exited.then(() => (done = true));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (done) throw new Error(`${server.platform} dev exited before serving:\n${server.output()}`);
    try {
      const response = await fetch(`http://${server.host}/`);
      await response.body?.cancel();
      if (server.output().includes("Ready on")) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${server.platform} dev did not serve on port ${server.port} within 60 s:\n${server.output()}`);
}

/**
 * The process groups started here and still running. A server runs in a group of its own, so that stopping it ends
 * its workerd too; that also means it outlives a test process that is killed before it stops the server (a timeout,
 * Ctrl-C) and keeps a core busy for good. So the groups end with this process, however it ends.
 */
const running = new Set<number>();
const killRunning = () => {
  for (const group of running) {
    try {
      process.kill(-group, "SIGKILL");
    } catch {
      // already gone
    }
  }
};
process.once("exit", killRunning);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    killRunning();
    process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
  });
}

/** Ends the whole process group we started (the CLI's node process and its workerd). */
async function stopGroup(child: ChildProcess, exited: Promise<void>): Promise<void> {
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, name);
    } catch {
      // already gone
    }
  };
  signal("SIGTERM");
  const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 5000));
  await Promise.race([exited, timeout]);
  // workerd sometimes outlives its CLI's node process and ignores SIGTERM; the group is ours, so end all of it.
  signal("SIGKILL");
  await exited;
}
