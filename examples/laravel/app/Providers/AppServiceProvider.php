<?php

namespace App\Providers;

use Illuminate\Support\ServiceProvider;

class AppServiceProvider extends ServiceProvider
{
    public function register()
    {
        // Laravel 8 does not create a missing SQLite file; do it for the
        // console (the preset's `php artisan migrate --force`) so the first
        // deploy creates <path>/shared/storage/database.sqlite.
        if ($this->app->runningInConsole() && config('database.default') === 'sqlite') {
            $file = config('database.connections.sqlite.database');
            if ($file !== ':memory:' && !file_exists($file) && is_dir(dirname($file))) {
                touch($file);
            }
        }
    }

    public function boot()
    {
        //
    }
}
