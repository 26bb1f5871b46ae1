classdef Failing < scistack.BaseVariable
end
