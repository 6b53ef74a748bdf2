package remote

// Exit statuses the scripts give their own meaning to. The others are 0,
// 1 (could not start) and those of the commands they run.
const (
	// holder
	StatusLogNotAppended = 3  // the tail's records could not be appended to the releases log
	StatusTailCut        = 4  // the input ended without the tail's end: nothing was acted on
	StatusCurrentNotLink = 65 // current exists and is not a symlink: nothing was touched
	StatusNoFlock        = 69 // the server has no flock(1)
	StatusLockBusy       = 75 // another deploy held the lock for the whole wait

	// upload
	StatusWritable            = 85 // writable-dirs could not be made writable (it says why)
	StatusManifestDelta       = 86 // the manifest rebuilt from the delta is not the one sent
	StatusNotSwitched         = 87 // the release is complete; the switch did not happen
	StatusSwitchedNotRecorded = 88 // live, but the success record is not in the log
)

// The lines that structure the holder's input (holder.sh).
const (
	TailPrune = "--prune--" // the records end, old release ids follow
	TailEnd   = "--end--"   // the tail arrived whole
	// Beat, before the tail, refreshes the holder's identity file.
	Beat = "--beat--"
)
