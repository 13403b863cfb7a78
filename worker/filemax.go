package worker

import "fmt"

// fileTableRisks names the queues whose maxima let the worker's slots
// together open more than half of the host's file table (fs.file-max):
// pids × open_files per job, times the slots. A job's open files cost it
// little charged memory, so its memory limit does not bound them; every
// process of the host would get ENFILE.
func fileTableRisks(queues []QueueConfig, slots int, fileMax int64) []string {
	var out []string
	for _, q := range queues {
		files := q.Max.Pids * q.Max.OpenFiles * int64(slots)
		if fileMax > 0 && files > fileMax/2 {
			out = append(out, fmt.Sprintf("queue %s: %d slots × max pids %d × max open_files %d = %d open files, more than half of fs.file-max (%d): lower max.pids or max.open_files",
				q.Name, slots, q.Max.Pids, q.Max.OpenFiles, files, fileMax))
		}
	}
	return out
}
