<?php

namespace App\Jobs;

use App\Models\Ping;
use App\Release;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;

/**
 * Queued on the database queue. A worker (`php artisan queue:work`, kept
 * running by supervisor or systemd from <path>/current) loads the code once
 * and keeps it: only `php artisan queue:restart` (the preset's
 * after-activate) makes it exit so its supervisor starts it again from the
 * new release. handled_by shows which release's code ran the job.
 */
class RecordPing implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public function __construct(public string $queuedBy)
    {
    }

    public function handle(): void
    {
        Ping::create([
            'queued_by' => $this->queuedBy,
            'handled_by' => Release::id(),
        ]);
    }
}
