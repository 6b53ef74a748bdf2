<?php

use App\Jobs\RecordPing;
use App\Release;
use Illuminate\Support\Facades\Artisan;

Artisan::command('release:id', function () {
    $this->line(Release::id());
})->purpose('Print the id of the release this code runs from');

Artisan::command('ping:queue', function () {
    RecordPing::dispatch(Release::id());
    $this->info('queued');
})->purpose('Queue a RecordPing job');
