/**
 * Starts the project's reflector under a real `partykit dev` on a free loopback port with its own persist folder,
 * and stops it by the PID (process group) it started.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const partykitBin = join(root, "node_modules", "partykit", "dist", "bin.mjs");

export interface PartykitDevOptions {
  /** Reuse a persist folder (to restart on the same storage); by default a new temporary one, which the caller removes with `removePersistDir`. */
  persistDir?: string;
  /** `--var` values for the room, such as `TICK_INTERVAL_MS`. */
  vars?: Record<string, string>;
  /** Another script than the project's reflector (the benchmark's baseline room). */
  script?: string;
  /** Another config than the project's partykit.json (the benchmark's, which serves no assets: a rebuilt dist/ would restart the server). */
  config?: string;
  /** Listen on this port (to restart a server where its clients expect it); by default a free one. */
  port?: number;
}

export interface PartykitDev {
  /** `127.0.0.1:port`, for partysocket's `host`. */
  host: string;
  port: number;
  /** The process group it runs in (partykit's node process and its workerd), for the benchmark's CPU readings. */
  processGroup: number;
  persistDir: string;
  /** Output of the server so far, for failure messages. */
  output(): string;
  stop(): Promise<void>;
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

export async function startPartykitDev(options: PartykitDevOptions = {}): Promise<PartykitDev> {
  const persistDir = options.persistDir ?? (await mkdtemp(join(tmpdir(), "multiuser-chat-persist-")));
  const port = options.port ?? (await freePort());
  const args = [partykitBin, "dev", "--port", String(port), "--persist", persistDir, "--disable-request-cf-fetch", "--no-hotkeys"];
  for (const [name, value] of Object.entries(options.vars ?? {})) args.push("--var", `${name}=${value}`);
  if (options.config !== undefined) args.push("--config", options.config);
  if (options.script !== undefined) args.push(options.script);
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // the test runner's loader is not the server's business
  const child = spawn(process.execPath, args, { cwd: root, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const server: PartykitDev = {
    host: `127.0.0.1:${port}`,
    port,
    processGroup: child.pid!,
    persistDir,
    output: () => output,
    stop: () => stopGroup(child, exited),
  };
  try {
    await waitUntilServing(port, exited, () => output);
  } catch (error) {
    await stopGroup(child, exited);
    throw error;
  }
  return server;
}

/** Removes a persist folder made by `startPartykitDev` once no server uses it. */
export async function removePersistDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

async function waitUntilServing(port: number, exited: Promise<void>, output: () => string): Promise<void> {
  let done = false;
  void exited.then(() => (done = true));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (done) throw new Error(`partykit dev exited before serving:\n${output()}`);
    try {
      const response = await fetch(`http://127.0.0.1:${port}/`);
      await response.body?.cancel();
      if (output().includes("Ready on")) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`partykit dev did not serve on port ${port} within 60 s:\n${output()}`);
}

/** Ends the whole process group we started (partykit's node process and its workerd). */
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
  // workerd sometimes outlives partykit's node process and ignores SIGTERM; the group is ours, so end all of it.
  signal("SIGKILL");
  await exited;
}
