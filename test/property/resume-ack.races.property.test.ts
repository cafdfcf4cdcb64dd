/** Scheduler properties, part 1: duplicate resumes and ack races (harness: resume-ack.scheduler.ts). */
import { declareSchedulerTests } from './resume-ack.scheduler.ts';

await declareSchedulerTests(['duplicateResumes', 'ackRaces'], 'ignore-fence');
