/**
 * The benchmark's view of a `wrangler dev` server's processes: the workerd that runs the rooms, pinning to a core
 * with `taskset`, CPU time from `/proc/<pid>/stat`, resident memory from `/proc/<pid>/status`, and the file watcher.
 *
 * `wrangler dev`, started in its own process group, runs two node processes (a launcher and the CLI), esbuild
 * (which bundles the Worker and watches its sources) and two workerd: a proxy that listens on the server's port and
 * passes every request and WebSocket on, and the Worker's own, which runs the rooms.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";

/** `/proc/<pid>/stat` counts CPU time in clock ticks of this many per second. */
const CLOCK_TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

interface ProcessStat {
  pid: number;
  command: string;
  processGroup: number;
  /** User plus system CPU time in microseconds. */
  cpuMicros: number;
}

function readStat(pid: number): ProcessStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined; // gone
  }
  // The command may hold spaces and parentheses; the fields after its last ")" do not.
  const close = text.lastIndexOf(")");
  const fields = text.slice(close + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // utime and stime: fields 14 and 15 of proc(5)
  return { pid, command: text.slice(text.indexOf("(") + 1, close), processGroup: Number(fields[2]), cpuMicros: (ticks * 1e6) / CLOCK_TICKS };
}

function processesInGroup(group: number): ProcessStat[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map((name) => readStat(Number(name)))
    .filter((stat): stat is ProcessStat => stat?.processGroup === group);
}

/** Whether a process has a file or directory open under `folder`. */
function hasOpenUnder(pid: number, folder: string): boolean {
  const fds = `/proc/${pid}/fd`;
  try {
    return readdirSync(fds).some((fd) => {
      try {
        const target = readlinkSync(join(fds, fd));
        return target === folder || target.startsWith(`${folder}/`);
      } catch {
        return false; // closed meanwhile
      }
    });
  } catch {
    return false; // gone
  }
}

/**
 * The workerd process that runs a server's rooms, so that its CPU time is theirs: of the two in the server's process
 * group, the one that holds the server's state folder (`persistDir`) open, where the rooms' storage lives. The other
 * is wrangler's proxy.
 */
export function findWorkerd(group: number, persistDir: string): number {
  return onlyWorkerd(group, persistDir, true);
}

/**
 * wrangler's proxy: the other workerd of the group, which holds no state folder open. Every socket passes through it,
 * so what a client does not read may wait in its buffers rather than the rooms'.
 */
export function findProxy(group: number, persistDir: string): number {
  return onlyWorkerd(group, persistDir, false);
}

function onlyWorkerd(group: number, persistDir: string, holdsState: boolean): number {
  const workerd = processesInGroup(group).filter((stat) => stat.command === "workerd" && hasOpenUnder(stat.pid, persistDir) === holdsState);
  if (workerd.length !== 1)
    throw new Error(`${workerd.length} workerd processes in process group ${group} ${holdsState ? "hold" : "do not hold"} ${persistDir} open, not one`);
  return workerd[0]!.pid;
}

/** CPU time (user + system) a process has used so far, in microseconds, at the kernel's clock-tick resolution. */
export function cpuMicros(pid: number): number {
  const stat = readStat(pid);
  if (stat === undefined) throw new Error(`process ${pid} is gone`);
  return stat.cpuMicros;
}

/** A process's resident memory (VmRSS) in bytes. */
export function rssBytes(pid: number): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    throw new Error(`process ${pid} is gone`);
  }
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`process ${pid} reports no VmRSS`);
  return Number(kib) * 1024;
}

function hasTaskset(): boolean {
  try {
    execFileSync("taskset", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Pins every thread of the servers' process groups to core 0 and this process to core 1, so the load generator
 * does not compete with the server it measures. Returns a description for the report.
 *
 * wrangler's proxy workerd stays on core 0 with the rooms, though every frame passes through it (about 6.5 µs of CPU
 * per delivery, against 15-20 µs in a room): on core 1, it would compete with the load generator, which at saturation
 * already keeps that core busy (about 25 µs per delivery).
 */
export function pinCores(serverGroups: number[]): string {
  if (cpus().length < 2) return "not pinned (one core)";
  if (!hasTaskset()) return "not pinned (no taskset)";
  for (const stat of serverGroups.flatMap(processesInGroup)) execFileSync("taskset", ["-a", "-p", "-c", "0", String(stat.pid)], { stdio: "ignore" });
  execFileSync("taskset", ["-a", "-p", "-c", "1", String(process.pid)], { stdio: "ignore" });
  return "servers on core 0, load generator on core 1 (taskset)";
}

/**
 * Stops `wrangler dev`'s file watcher until the returned function is called: esbuild, which polls the Worker's
 * sources (idle, about 1.5% of a core together with the wrangler process that drives it) and, when one changes,
 * rebuilds the Worker; wrangler then replaces the rooms' workerd with a new process. So a source edited during a run
 * neither restarts the rooms halfway nor mixes two versions of the code in one table. wrangler's other watchers (its
 * config, the dev registry) use inotify, which costs nothing while nothing changes.
 */
export function pauseWatchers(serverGroups: number[]): () => void {
  const watchers = serverGroups.flatMap(processesInGroup).filter((stat) => stat.command === "esbuild");
  for (const { pid } of watchers) process.kill(pid, "SIGSTOP");
  return () => {
    for (const { pid } of watchers) {
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        // already gone
      }
    }
  };
}
