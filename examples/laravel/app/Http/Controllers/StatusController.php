<?php

namespace App\Http\Controllers;

use App\Jobs\RecordPing;
use App\Models\Ping;
use App\Release;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Response;
use Illuminate\Support\Facades\DB;

class StatusController extends Controller
{
    /** GET / : which release answered (no database access: cheap under load). */
    public function index(): JsonResponse
    {
        return response()->json([
            'app' => config('app.name'),
            'release' => Release::id(),
            'revision' => Release::revision(),
            'build' => config('example.build'),
        ]);
    }

    /** GET /health : 200 with the release id once the database is migrated. */
    public function health(): Response
    {
        $migrations = DB::table('migrations')->count();

        return response('ok release='.Release::id().' migrations='.$migrations."\n", 200)
            ->header('Content-Type', 'text/plain; charset=utf-8')
            ->header('Cache-Control', 'no-store');
    }

    /** GET /about : a Blade view (compiled by `php artisan view:cache`). */
    public function about()
    {
        return view('about', ['release' => Release::id(), 'revision' => Release::revision()]);
    }

    /** POST|GET /ping : queue a job; a queue worker records which release handled it. */
    public function ping(): JsonResponse
    {
        RecordPing::dispatch(Release::id());

        return response()->json(['queued' => true, 'release' => Release::id()], 202);
    }

    /** GET /pings : the last jobs handled, newest first. */
    public function pings(): JsonResponse
    {
        return response()->json(Ping::query()->latest('id')->limit(20)->get());
    }
}
