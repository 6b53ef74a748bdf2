<?php

namespace App;

/**
 * Which release this code is running from.
 *
 * atomic-deploy puts every release in <path>/releases/<id> and points
 * <path>/current at it; the base path of a request served through
 * $realpath_root is the release directory itself, so its name is the
 * release id. REVISION (written by atomic-deploy) holds the commit.
 */
class Release
{
    public static function id(): string
    {
        $real = realpath(base_path());

        return $real === false ? 'unknown' : basename($real);
    }

    public static function revision(): string
    {
        $file = base_path('REVISION');

        return is_file($file) ? trim((string) file_get_contents($file)) : 'unknown';
    }
}
