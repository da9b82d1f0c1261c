/**
 * The benchmark's view of a `partykit dev` server's processes: the workerd that runs the room, pinning to a
 * core with `taskset`, and CPU time from `/proc/<pid>/stat`.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { cpus } from "node:os";

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

/** The workerd process of a server started in its own process group: it runs the rooms, so its CPU time is theirs. */
export function findWorkerd(group: number): number {
  const workerd = processesInGroup(group).find((stat) => stat.command.includes("workerd"));
  if (workerd === undefined) throw new Error(`no workerd process in process group ${group}`);
  return workerd.pid;
}

/** CPU time (user + system) a process has used so far, in microseconds, at the kernel's clock-tick resolution. */
export function cpuMicros(pid: number): number {
  const stat = readStat(pid);
  if (stat === undefined) throw new Error(`process ${pid} is gone`);
  return stat.cpuMicros;
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
 */
export function pinCores(serverGroups: number[]): string {
  if (cpus().length < 2) return "not pinned (one core)";
  if (!hasTaskset()) return "not pinned (no taskset)";
  for (const stat of serverGroups.flatMap(processesInGroup)) execFileSync("taskset", ["-a", "-p", "-c", "0", String(stat.pid)], { stdio: "ignore" });
  execFileSync("taskset", ["-a", "-p", "-c", "1", String(process.pid)], { stdio: "ignore" });
  return "servers on core 0, load generator on core 1 (taskset)";
}

/**
 * Stops `partykit dev`'s file watchers (esbuild, polling the project) until the returned function is called. Idle,
 * they took about 5% of the servers' core in short bursts, which showed up in the latency tails of whichever server
 * was being measured. Nothing is edited during a bench, so nothing is missed.
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
