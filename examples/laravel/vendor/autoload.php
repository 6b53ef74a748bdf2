<?php

/*
 * Stand-in for Composer's vendor/autoload.php.
 *
 * This example runs on Debian's packaged Laravel 8 (apt-get install
 * php-laravel-framework php-sqlite3), so there is no `composer install`:
 * the framework and its dependencies come from Debian's autoloader, and the
 * application's own PSR-4 namespaces (see composer.json) are registered here,
 * relative to this file, so the release works from whatever directory it is
 * deployed to. An application installed with Composer ships Composer's real
 * vendor/ instead and needs none of this.
 */

require_once 'Illuminate/autoload.php'; // /usr/share/php is on PHP's include_path

spl_autoload_register(static function (string $class): void {
    static $roots = null;
    if ($roots === null) {
        $base = dirname(__DIR__);
        $roots = [
            'App\\' => $base.'/app/',
            'Database\\Seeders\\' => $base.'/database/seeders/',
        ];
    }
    foreach ($roots as $prefix => $dir) {
        if (strncmp($class, $prefix, strlen($prefix)) === 0) {
            $file = $dir.str_replace('\\', '/', substr($class, strlen($prefix))).'.php';
            if (is_file($file)) {
                require $file;
            }

            return;
        }
    }
});
