<?php

return [
    'paths' => [
        resource_path('views'),
    ],

    // Compiled Blade templates live in the release (bootstrap/cache is one of
    // the preset's writable-dirs), not in the shared storage/: the preset's
    // `php artisan view:cache` runs in the new release before the switch and
    // starts with view:clear, which would otherwise delete the compiled views
    // of the release still serving traffic. Old compiled views also go away
    // with their release instead of piling up in shared/storage.
    'compiled' => env('VIEW_COMPILED_PATH', base_path('bootstrap/cache/views')),
];
