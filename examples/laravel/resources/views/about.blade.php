<!doctype html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <title>{{ config('app.name') }}</title>
</head>
<body>
    <h1>{{ config('app.name') }}</h1>
    <p>Served from release <code>{{ $release }}</code> (revision <code>{{ $revision }}</code>), build {{ config('example.build') }}.</p>
    @if (app()->configurationIsCached())
        <p>Configuration is cached.</p>
    @endif
</body>
</html>
