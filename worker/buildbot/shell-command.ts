import { arg, type CommandSpec } from './command.js';
import { resolveCommand, runProcess } from './run-process.js';

/** The `shell` command (buildbot_worker/commands/shell.py): one process, rc and all. */
export const shellCommand: CommandSpec = {
  required: ['workdir', 'command'],
  async run(ctx, args, env) {
    const name = 'shell';
    const workdir = arg(args, 'workdir', 'string', name)!;
    const logfiles = args.logfiles ?? {};
    if (typeof logfiles !== 'object' || logfiles === null || Array.isArray(logfiles)) throw new Error('shell: args.logfiles must be a map of name to file');
    const placement = await env.placeShell(workdir, resolveCommand(args.command).real);
    await runProcess(ctx, {
      command: args.command,
      workdir,
      env: args.env,
      sendStdout: args.want_stdout === undefined ? true : Boolean(args.want_stdout),
      sendStderr: args.want_stderr === undefined ? true : Boolean(args.want_stderr),
      timeout: arg(args, 'timeout', 'number', name),
      maxTime: arg(args, 'maxTime', 'number', name),
      sigtermTime: arg(args, 'sigtermTime', 'number', name),
      initialStdin: arg(args, 'initial_stdin', 'string', name),
      logEnviron: arg(args, 'logEnviron', 'boolean', name) ?? true,
      logfiles: logfiles as Record<string, unknown>,
      usePTY: arg(args, 'usePTY', 'boolean', name) ?? false,
      interruptSignal: arg(args, 'interruptSignal', 'string', name) ?? 'KILL',
      launcher: placement.launcher,
      containerPath: placement.containerPath,
      paths: env.paths,
      freezer: env.freezer,
    });
  },
};
