<?php

// DB_DATABASE may be relative to the application (the default,
// storage/database.sqlite, lives in the shared storage directory, so every
// release uses the same database) or absolute.
$sqlite = env('DB_DATABASE', 'storage/database.sqlite');
if ($sqlite !== ':memory:' && !str_starts_with($sqlite, '/')) {
    $sqlite = base_path($sqlite);
}

return [
    'default' => env('DB_CONNECTION', 'sqlite'),

    'connections' => [
        'sqlite' => [
            'driver' => 'sqlite',
            'url' => env('DATABASE_URL'),
            'database' => $sqlite,
            'prefix' => '',
            'foreign_key_constraints' => env('DB_FOREIGN_KEYS', true),
        ],
    ],

    'migrations' => 'migrations',
];
