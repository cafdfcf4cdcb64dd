/** Scheduler properties, part 2: late checkpoint writes, publishes and remote appends racing resumes (harness: resume-ack.scheduler.ts). */
import { declareSchedulerTests } from './resume-ack.scheduler.ts';

await declareSchedulerTests(['lateWrites', 'publishes', 'coldResumes'], 'drop-write');
