classdef Split
%SPLIT An output of scistack.for_each saved at finer addresses, one value per key.
%   scistack.for_each(@cut_trials, struct('emg', SessionEMG()), ...
%       {scistack.Split(TrialEMG(), 'trial'), NTrials()}, 'subject', [1 2], 'session', {'pre'})
%   cut_trials returns a containers.Map from each trial (a number or char key) to its value
%   (or a struct whose field names are the trials);
%   each value is saved as TrialEMG at the combination's address plus trial=<key>, with the
%   call's lineage, and a re-run restores every trial from the cache, as
%   Split(TrialEMG, by="trial") does in Python. BY is a schema key the run does not iterate.
    properties
        variable = [];   % a scistack.BaseVariable instance
        by = '';         % the schema key the returned map's keys fill
    end
    methods
        function obj = Split(variable, by)
            if nargin < 2 || ~isa(variable, 'scistack.BaseVariable')
                error('scistack:badArgument', ['Split(VARIABLE, KEY): VARIABLE must be a ', ...
                    'variable instance such as TrialEMG(), and KEY the schema key its parts ', ...
                    'fill, e.g. scistack.Split(TrialEMG(), ''trial'')']);
            end
            if ~ischar(by) || isempty(by)
                error('scistack:badArgument', ['Split(%s(), KEY): KEY must be the name of ', ...
                    'a schema key, e.g. ''trial'''], variable.variable_name());
            end
            obj.variable = variable;
            obj.by = by;
        end
    end
end
