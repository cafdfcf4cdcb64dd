/** Scheduler properties, part 2: late checkpoint writes and publishes racing resumes (harness: resume-ack.scheduler.ts). */
import { declareSchedulerTests } from './resume-ack.scheduler.ts';

await declareSchedulerTests(['lateWrites', 'publishes'], 'drop-write');
