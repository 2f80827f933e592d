/**
 * Latent workers (BuildBot's start_instance / stop_instance): workers that exist only while
 * there is work for them. The master's LatentWorkers manager decides when; a Provisioner does
 * the starting and stopping.
 *
 * Lifecycle: start(ctx) is called when queued work needs this worker and it is not connected;
 * it resolves once the start request was made (the worker then dials the master by itself
 * with ctx.token). stop(ctx) is called after the worker has been idle for the configured time,
 * when it failed to connect within startTimeout (of its start, or of its connection dropping),
 * and when the master shuts down.
 *
 * A cloud provisioner plugs in by implementing these two methods (e.g. start: create an
 * instance whose user-data runs `crowdbake worker --master ctx.masterUrl --token ctx.token
 * --when always`; stop: terminate it) and registering its `type` in createProvisioner.
 */
export interface Provisioner {
  start(ctx: ProvisionContext): Promise<void>;
  stop(ctx: ProvisionContext): Promise<void>;
}

export interface ProvisionContext {
  /** The worker's name, also the provisioner's. */
  name: string;
  /** Where the worker connects: ws://HOST:PORT/api/v1/worker. */
  masterUrl: string;
  /** A worker token for `name`, kept by the master in DATA/provisioners/NAME.token. */
  token: string;
  labels: string[];
  log: (line: string) => void;
  /** A provisioner that watches its worker's machine calls this when it went away by itself (e.g. the VM powered off). */
  exited?: (why: string) => void;
}
