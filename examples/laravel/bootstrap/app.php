<?php

/*
 * The base path is this release's directory (dirname(__DIR__)), never the
 * `current` symlink: PHP resolves __DIR__ to the real path, and nginx passes
 * $realpath_root, so one request runs entirely inside one release.
 */
$app = new Illuminate\Foundation\Application(
    $_ENV['APP_BASE_PATH'] ?? dirname(__DIR__)
);

$app->singleton(
    Illuminate\Contracts\Http\Kernel::class,
    App\Http\Kernel::class
);

$app->singleton(
    Illuminate\Contracts\Console\Kernel::class,
    App\Console\Kernel::class
);

$app->singleton(
    Illuminate\Contracts\Debug\ExceptionHandler::class,
    App\Exceptions\Handler::class
);

return $app;
